"""Campaigns (broadcasts), pure: a campaign's life (campaign.py), its definition and schedule
checked (definition.py), and who gets what when (audience.py). The engine that sends them:
application/campaign_engine.py."""
