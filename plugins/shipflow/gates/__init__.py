"""Release gates."""
