import numpy as np

from medistill.audit.mia import log_likelihood


def test_log_likelihood_of_the_true_label_is_floored() -> None:
    probs = np.array([[0.9, 0.1], [0.25, 0.75], [1.0, 0.0]])
    got = log_likelihood(probs, np.array([0, 0, 1]))
    np.testing.assert_allclose(got, [np.log(0.9), np.log(0.25), np.log(1e-12)])
