"""Deployment on one machine: rolling updates without failed requests, cold start, cost arithmetic, scaling.

Taught in 16_deployment_and_reliability.
"""
