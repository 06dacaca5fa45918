"""The notifications `delivery` role: nameko workers (eventlet) behind DeliveryService that
send rendered messages by email (SMTP), SMS (a Twilio-style gateway) and signed webhooks, and
answer one outcome per message. Nothing asyncio- or grpcio-based is imported here (an
import-linter contract holds it); services/notifications/README.md, "Delivery role"."""
