"""metalearner: learns per-sample values for a target model and predicts them for unseen
samples without retraining that model (see issue "Meta-learner")."""
