"""Margin backtesting: requirements along a path against the realised loss over the margin period
of risk, with Kupiec, Christoffersen and Basel traffic-light statistics (see ``engine``, ``stats``)."""
