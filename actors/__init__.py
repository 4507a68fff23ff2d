"""Domain actors: one per domain (catalogue, slot booker, payment, notifier, ...)."""

from actors._catalogue import Catalogue, ListShowrooms, catalogue_spec

__all__ = ["Catalogue", "ListShowrooms", "catalogue_spec"]
