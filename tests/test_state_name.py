"""``motia.state`` is both the ``state(...)`` trigger constructor and the ``motia.state`` package."""

from __future__ import annotations

import inspect
import subprocess
import sys

import motia
import motia.state.manager
import motia.steps
from motia.steps.triggers import StateTrigger


def test_calling_it_builds_a_state_trigger():
    trigger = motia.state(scope="x")
    assert isinstance(trigger, StateTrigger)
    assert trigger == motia.steps.state(scope="x")
    assert motia.state(scope="orders", key="o1") == motia.steps.state(scope="orders", key="o1")


def test_it_keeps_the_constructors_signature_name_and_docs():
    assert inspect.signature(motia.state) == inspect.signature(motia.steps.state)
    assert motia.state.__name__ == "state"
    assert motia.state.__doc__ == motia.steps.state.__doc__
    assert repr(motia.state) == repr(motia.steps.state)


def test_the_package_is_reachable_through_it():
    assert motia.state.manager.StateManager is motia.StateManager
    from motia.state.manager import StateManager

    assert StateManager is motia.StateManager
    assert "manager" in dir(motia.state)


def test_a_submodule_imported_later_is_reachable_too():
    code = (
        "import motia, sys\n"
        "import motia.state.urls\n"
        "assert motia.state.urls.mask_url is sys.modules['motia.state.urls'].mask_url\n"
        "assert motia.state(scope='x').scope == 'x'\n"
        "from motia import state\n"
        "assert state.manager.StateManager is motia.StateManager\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dunder_lookups_do_not_fall_through():
    assert not hasattr(motia.state, "__path__")
    assert not hasattr(motia.state, "__file__")
