"""reports: reading a run directory and showing it (terminal summary, plots, self-contained HTML)."""
