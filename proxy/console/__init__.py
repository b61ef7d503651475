"""The access review console (issue 18): server-rendered pages on the admin listener."""
