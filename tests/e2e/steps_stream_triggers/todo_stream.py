"""The stream the stream-trigger e2e tests write to."""

config = {"name": "todo"}
