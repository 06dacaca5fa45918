"""Campaigns (broadcasts), pure: a campaign's life (campaign.py) and who gets what when
(audience.py). The engine that sends them comes with the flows' engine (issue 12)."""
