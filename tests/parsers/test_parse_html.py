"""HTML bodies to readable text, in linear time whatever the input."""

import time

import pytest

from parsers.html import html_to_text


def test_blocks_and_breaks_become_lines():
    html = "<div>first</div><div>second<br>third</div><p>para</p>after"
    assert html_to_text(html) == "first\nsecond\nthird\n\npara\n\nafter"


def test_script_style_and_head_are_dropped():
    html = (
        "<html><head><title>T</title><style>p{color:red}</style></head>"
        "<body><script>var a = 1 < 2;</script>visible</body></html>"
    )
    assert html_to_text(html) == "visible"


def test_head_without_its_end_tag_ends_at_body():
    assert html_to_text("<head><title>T</title><body>shown") == "shown"


def test_lists_become_dashes_and_nested_lists_are_indented():
    html = "<ul><li>one</li><li>two<ul><li>deep</li></ul></li></ul>"
    assert html_to_text(html) == "- one\n- two\n  - deep"


def test_links_keep_text_and_show_a_different_target():
    html = (
        '<a href="https://example.com/help">help page</a> '
        '<a href="https://example.com">https://example.com</a> '
        '<a href="mailto:support@example.com">support@example.com</a> '
        '<a href="#top">top</a>'
    )
    assert html_to_text(html) == (
        "help page (https://example.com/help) https://example.com support@example.com top"
    )


def test_entities_are_decoded_and_nbsp_is_a_space():
    assert html_to_text("Fish&nbsp;&amp;&nbsp;chips &lt;3 &#1055;&#x0440;") == "Fish & chips <3 Пр"


def test_whitespace_is_collapsed_outside_pre_and_kept_inside():
    html = "<p>a \n\n   b</p><pre>x  y\n  z</pre>"
    assert html_to_text(html) == "a b\n\nx  y\n  z"


def test_table_cells_are_separated():
    html = "<table><tr><td>A</td><td>B</td></tr><tr><td>C</td></tr></table>"
    assert html_to_text(html) == "A B\nC"


def test_stray_angle_brackets_are_text():
    assert html_to_text("1 < 2 and 3 > 2") == "1 < 2 and 3 > 2"


def test_unclosed_comment_ends_the_text():
    assert html_to_text("shown<!-- never closed <b>hidden</b>") == "shown"


@pytest.mark.parametrize(
    "unit",
    ["<a ", "<", "</", "<?", "<!", "<![CDATA[", "<x", "<ul>", "<a href=y>", "&#", "<!--"],
)
def test_hostile_input_is_linear(unit):
    """Ten times the input must cost about ten times the time, not a hundred."""

    def cost(count: int) -> float:
        started = time.perf_counter()
        html_to_text(unit * count)
        return time.perf_counter() - started

    small, large = cost(5_000), cost(50_000)
    assert large < max(small, 0.002) * 30
    assert large < 2.0


def test_list_items_in_dropped_regions_leave_the_text_alone():
    assert html_to_text("<p>kept</p><head><li>hidden</li></head>after") == "kept\n\nafter"
