"""Shipflow's AWS release actions, built like the Amazon provider's own.

One AWS service keeps one module name in every layer: ``hooks/codebuild.py``, ``operators/codebuild.py``,
``triggers/codebuild.py``, ``waiters/codebuild.json``, ``links/codebuild.py`` and
``constants/codebuild.py`` (the statuses and defaults that operator, trigger and waiter share).
Hooks are thin boto3 wrappers, operators hold the logic, triggers only wait, waiters are data.
"""
