"""Every matplotlib figure of the house (the only package that imports matplotlib): functions that take result
objects and return figures; the app layer saves them."""
