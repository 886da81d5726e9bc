"""Classical baselines on handcrafted features: SVM, k-NN, random forest, XGBoost.

Built in issue 3; empty until then.
"""
