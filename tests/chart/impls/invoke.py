"""Child machines for the cases in cases/invoke (backstate's own, checked against
XState v5 by hand: each case's source names the XState behaviour it follows)."""

from backstate.chart import send_parent, setup

ACTORS = {
    # Schedules LATE for its parent, then finishes in the same macrostep (W3C test 187).
    "finishesBeforeItsDelayedSend": setup().create_machine(
        {
            "initial": "busy",
            "states": {
                "busy": {
                    "entry": [send_parent({"type": "LATE"}, delay=100)],
                    "always": "finished",
                },
                "finished": {"type": "final"},
            },
        }
    ),
    # Done at once; its final state's exit action tells the parent (W3C test 236).
    "doneAtOnceSendingOnExit": setup().create_machine(
        {
            "initial": "finished",
            "states": {
                "finished": {
                    "type": "final",
                    "exit": [send_parent({"type": "CHILD_TO_PARENT"})],
                }
            },
        }
    ),
    # Tells its parent that it runs, and answers PING.
    "announcingChild": setup().create_machine(
        {
            "entry": [send_parent({"type": "STARTED"})],
            "on": {"PING": {"actions": [send_parent({"type": "PONG"})]}},
        }
    ),
}
