"""Report stage: leaderboard tables (Markdown, CSV, JSON), plots and the static site."""
