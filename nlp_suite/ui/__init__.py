"""Gradio web UI: a Chat tab (customer-service bot) and a Monitor tab (entity sentiment and alerts).

`nlp_suite.ui.app.launch(cfg)` serves it; `nlp_suite.ui.queries` holds the Monitor tab's read-only SQL.
"""
