"""Voting, bagging, boosting and stacking of the classical and deep models.

Built in issue 5; empty until then.
"""
