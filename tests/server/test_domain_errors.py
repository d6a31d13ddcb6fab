"""Services raise domain refusals; the web maps each kind to its status and the one JSON error shape in one place,
and the CLI to a click error in one place."""

import click
import pytest
from flask import Flask

from server import errors
from server.cli.common import api_errors
from server.errors import HTTP_STATUS, ApiError, DomainError


@pytest.mark.parametrize("kind", sorted(HTTP_STATUS, key=lambda k: k.__name__))
def test_each_kind_answers_its_status_with_the_error_shape(kind):
    app = Flask(__name__)
    errors.register(app)

    @app.get("/refuse")
    def refuse():
        raise kind("some_code", "What went wrong, and what to do.", field="title")

    response = app.test_client().get("/refuse")
    assert response.status_code == HTTP_STATUS[kind]
    assert response.get_json() == {"error": {"code": "some_code", "message": "What went wrong, and what to do.",
                                             "field": "title"}}


def test_an_http_layer_refusal_keeps_its_own_status_and_retry_after():
    app = Flask(__name__)
    errors.register(app)

    @app.get("/slow-down")
    def slow_down():
        raise ApiError(429, "too_many", "Wait a minute.", retry_after=60)

    response = app.test_client().get("/slow-down")
    assert (response.status_code, response.headers["Retry-After"]) == (429, "60")
    assert isinstance(ApiError(400, "x", "y"), DomainError)


def test_the_cli_turns_a_refusal_into_a_click_error():
    with pytest.raises(click.ClickException) as caught, api_errors():
        raise errors.NotFound("device_not_found", "No device r-1; list them with 'lessoncast device list'.")
    assert caught.value.message == "No device r-1; list them with 'lessoncast device list'."
