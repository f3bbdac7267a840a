"""OpenTelemetry for the runtime (runtime floor): loaded only when tracing is on.

:mod:`motia.runtime.telemetry.recent` keeps the last traces of this process for the console's Traces view.
"""
