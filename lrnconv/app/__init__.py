"""Layer 7: what users call.

``convert`` orchestration (``conversion``), static ``inspect`` (``inspection``), the batch
over a model zoo (``zoo``), text and Markdown renderings (``render``) and the click
command line (``cli``), a thin layer over the rest.
"""
