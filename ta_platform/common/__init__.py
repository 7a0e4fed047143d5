"""Small shared helpers (atomic files, hashing, paths, fault records) used by every domain."""
