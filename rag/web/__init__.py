"""The web layer: the FastAPI app with the JSON API (app.py, routes.py), access control and headers
(auth.py, middleware.py), the feedback log (feedback.py), the Gradio chat (ui/) and its CSS/JS (static/)."""
