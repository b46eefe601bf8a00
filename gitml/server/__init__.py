"""ASGI apps run by uvicorn over the library: the scoring server (``scoring_app``)."""
