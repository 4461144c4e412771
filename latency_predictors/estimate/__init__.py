"""Estimating a device we do not have: the analytical roofline cost model (``roofline``), the
published nets (``reference_nets``) and latencies (``anchors``, ``anchors.csv``) it is fitted
on."""
