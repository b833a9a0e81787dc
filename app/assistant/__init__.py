"""The AI assistant: what the model is sent, the chat, the model service and report pre-drafting (no Qt)."""
