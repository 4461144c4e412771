"""Estimating a device we do not have: the devices as data (``devices``: one registered
roofline model each), the analytical cost model (``roofline``), the published nets
(``reference_nets``) and latencies (``anchors``, ``anchors.csv``) their parameters are fitted
on, and the estimated tables, one device's or the shipped ones (``tables``)."""
