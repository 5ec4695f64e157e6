"""Ranked passages -> a cited answer: what the question asks for (question.py), the extractive reader
(extractive.py), and the pluggable generator backends that use it (generators/)."""
