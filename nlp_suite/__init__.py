"""nlp-suite: one shared LSTM encoder for chat, financial monitoring and recommendation."""
__version__ = "0.1.0"
