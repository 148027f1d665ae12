"""The episode table: draws joined to episodes by the as-of rule."""
