"""The configuration Tortoise's own CLI reads (`python manage.py makemigrations`)."""

from models.db import tortoise_config
from settings import Settings

TORTOISE_ORM = tortoise_config(Settings())
