"""Celery workers and the science: checkpoint loading, saliency maps, signature scoring."""
