"""Analyses of generated reasoning: reflection patterns (§3, §4), lengths."""
