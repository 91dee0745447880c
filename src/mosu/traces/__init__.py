"""One loader per public trace format; each yields the records of ``traces.schema``."""
