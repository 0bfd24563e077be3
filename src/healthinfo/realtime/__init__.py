"""Real-time: SSE and WebSocket rooms per kit, presence, and the bridge to the event bus."""
