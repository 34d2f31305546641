"""exchange_sim: a loopback Exchange simulator (API documented below once complete)."""

from exchange_sim.simulator import Simulator, UserAccount
from exchange_sim.store import ExtendedKey, Item, Store, StoreError
from exchange_sim.user import MailboxUser

__all__ = ["ExtendedKey", "Item", "MailboxUser", "Simulator", "Store", "StoreError", "UserAccount"]
