"""sequences: the pure parts (ping-pong order, frame counts, file tags). Rendering and writing a
sequence are covered end to end by test_edit_commands."""

from eg3d_regressor_plugin import sequences


def test_pingpong_loops_without_repeating_the_ends():
    assert sequences.pingpong([0, 1, 2, 3]) == [0, 1, 2, 3, 2, 1]
    assert sequences.pingpong([0, 1]) == [0, 1]


def test_forward_frames_covers_half_a_there_and_back_video():
    assert sequences.forward_frames(60) == 31
    assert sequences.forward_frames(2) == 2 and sequences.forward_frames(1) == 2


def test_alpha_tags_sort_and_show_the_sign():
    assert sequences.alpha_tag(0, -3) == '00_alpha-3.00'
    assert sequences.alpha_tag(12, 0.5) == '12_alpha+0.50'
