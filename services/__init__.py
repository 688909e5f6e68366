"""Services around the stream: bank producers, file replay, label loading, registry, alert consumer."""
