"""errors.did_you_mean: the one did-you-mean hint every InputError message uses."""

from ganaug.errors import did_you_mean


def test_did_you_mean_names_the_closest_candidate_or_nothing():
    assert did_you_mean("nmae", ["name", "root"]) == " (did you mean 'name'?)"
    assert did_you_mean("8", [3, 8]) == " (did you mean '8'?)"  # candidates compare as text
    assert did_you_mean("zzzz", ["name", "root"]) == ""
