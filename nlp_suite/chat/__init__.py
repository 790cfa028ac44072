"""Customer-service chat: the FAQ knowledge base (`knowledge`) and the reply service (`service`) behind the chat UI.

The service turns a user message into a plain-text `BotReply` (answer, clarifying question, fallback with a human
hand-off offer, refusal or hand-off), keeps per-session multi-turn state, and logs every turn to `chat_messages`.
"""
