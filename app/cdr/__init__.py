"""Pexip call events from stored syslog, and participant CDRs assembled from them."""
