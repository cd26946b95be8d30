import pytest

from mmsupport.config import load_settings
from mmsupport.errors import InvalidInput


def test_resolution_order_override_beats_env_beats_default():
    env = {"MMSUPPORT_TOP_K": "9", "MMSUPPORT_TABLE": "from_env"}
    settings = load_settings(env, table="from_flag", model=None)
    assert settings.table == "from_flag"
    assert settings.top_k == 9
    assert settings.search_mode == "hybrid"


def test_optional_and_literal_fields_are_parsed():
    settings = load_settings({"MMSUPPORT_ADAPTER": "", "MMSUPPORT_QUANTIZATION": "4bit", "MMSUPPORT_BASE_URL": "http://x"})
    assert settings.adapter is None
    assert settings.quantization == "4bit"
    assert settings.base_url == "http://x"


@pytest.mark.parametrize("env", [{"MMSUPPORT_TOP_K": "many"}, {"MMSUPPORT_SEARCH_MODE": "magic"}])
def test_bad_environment_values_name_the_variable(env):
    with pytest.raises(InvalidInput, match=next(iter(env))):
        load_settings(env)


def test_secrets_stay_out_of_repr():
    settings = load_settings({"MMSUPPORT_API_KEY": "sk-secret", "MMSUPPORT_ADMIN_PASSWORD": "hunter2"})
    assert "sk-secret" not in repr(settings) and "hunter2" not in repr(settings)


@pytest.mark.parametrize("env, expected", [({}, False), ({"GRADIO_MCP_SERVER": "True"}, True),
                                           ({"MMSUPPORT_MCP": "true"}, True),
                                           ({"GRADIO_MCP_SERVER": "True", "MMSUPPORT_MCP": "false"}, False),
                                           ({"GRADIO_MCP_SERVER": "False"}, False)])
def test_mcp_follows_mmsupport_mcp_then_gradios_own_switch(env, expected):
    assert load_settings(env).mcp is expected
    assert load_settings(env, mcp=True).mcp is True
