"""What the fleet runs now, against its plan: status, metrics and the HTML fleet report."""
