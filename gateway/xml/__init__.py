"""XML for every stage: the one hardened parse and XSD check (``safe``), the one Saxon
processor (``saxon``) and what each invoice syntax is (``syntax``)."""
