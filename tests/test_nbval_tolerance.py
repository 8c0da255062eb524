from conftest import last_digit_unit, same_up_to_last_digit


def test_unit_of_the_last_printed_digit():
    assert last_digit_unit("0.83") == 0.01
    assert last_digit_unit("-0.0477") == 1e-4
    assert abs(last_digit_unit("1.2e-05") - 1e-6) < 1e-20


def test_decimals_may_differ_by_one_unit_of_their_last_digit():
    assert same_up_to_last_digit("| acc | 0.83 |", "| acc | 0.84 |")
    assert same_up_to_last_digit("slope -0.0477 [-0.0481, -0.0474]",
                                 "slope -0.0478 [-0.0481, -0.0473]")
    assert same_up_to_last_digit("err 1.2e-05", "err 1.3e-05")
    assert not same_up_to_last_digit("| acc | 0.83 |", "| acc | 0.85 |")
    assert not same_up_to_last_digit("err 1.2e-05", "err 1.2e-04")


def test_integers_words_and_verdicts_must_match():
    assert not same_up_to_last_digit("3/3 seeds", "2/3 seeds")
    assert not same_up_to_last_digit("| reproduced |", "| not reproduced |")
    assert not same_up_to_last_digit("step 250", "step 251")
    assert same_up_to_last_digit("lr 0.1, 250 steps", "lr 0.1, 250 steps")


def test_the_tolerant_comparison_is_installed_in_nbval():
    from nbval.plugin import IPyNbCell

    assert IPyNbCell.compare_outputs.__module__ == "conftest"
