"""Ending a paho-mqtt client that runs its own network thread."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt


def hang_up(client: mqtt.Client, **disconnect: Any) -> None:
    """Disconnect CLIENT (with DISCONNECT's keyword arguments) and stop its network thread.

    paho-mqtt 2.1's loop_stop() checks that the thread exists and then joins it, reading the attribute twice, while
    the thread sets it to None as it ends. A disconnect makes the thread end at any moment, so loop_stop() can fail
    with AttributeError between the two reads: an enrolment once answered 500 that way. The thread has finished
    its loop when it clears the attribute, so there is nothing left to wait for.
    """
    client.disconnect(**disconnect)
    try:
        client.loop_stop()
    except AttributeError:
        pass
