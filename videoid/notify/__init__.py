"""Messages to people outside: SMS (and, with the certificate issue, e-mail)."""

from .sms import HttpSms, OutboxSms, SmsError, SmsGateway, sms_gateway

__all__ = ["HttpSms", "OutboxSms", "SmsError", "SmsGateway", "sms_gateway"]
