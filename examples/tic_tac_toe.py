"""Multiplayer tic-tac-toe (State Backed's example): two anonymous players, identified
by session id, play over the API while both watch the game over /rt. Creating the game
settles only after the invoked service has hashed player 1's id; the authorizer lets
each player move only on their own turn."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from backstate.chart import assign, setup

Board = list[list[str]]


async def hash_id(player_id: str) -> str:
    return base64.b64encode(hashlib.sha256(player_id.encode()).digest()).decode()


def get_result(board: Board) -> str | None:
    lines = [*board, *([board[r][c] for r in range(3)] for c in range(3))]
    lines += [[board[i][i] for i in range(3)], [board[i][2 - i] for i in range(3)]]
    for line in lines:
        if line[0] and line.count(line[0]) == 3:
            return line[0]
    return "draw" if all(cell for row in board for cell in row) else None


def _is_legal(context: Any, event: Any) -> bool:
    row, column = event.get("row"), event.get("column")
    if not (
        isinstance(row, int) and isinstance(column, int) and 0 <= row <= 2 and 0 <= column <= 2
    ):
        return False
    return context["public"]["board"][row][column] == ""


def _mark(mark: str) -> Any:
    def place(context: Any, event: Any) -> dict[str, Any]:
        board = [list(row) for row in context["public"]["board"]]
        board[event["row"]][event["column"]] = mark
        return {"public": {**context["public"], "board": board}}

    return assign(place)


def _record_winner(context: Any, event: Any) -> dict[str, Any]:
    public = context["public"]
    result = get_result(public["board"])
    winner = (
        "player1"
        if result == public["player1Mark"]
        else "player2"
        if result == public["player2Mark"]
        else "draw"
    )
    return {"public": {**public, "winners": [*public["winners"], winner]}}


def _new_round(context: Any, event: Any) -> dict[str, Any]:
    public = context["public"]
    return {
        "public": {
            **public,
            "board": [["", "", ""] for _ in range(3)],
            "player1Mark": public["player2Mark"],
            "player2Mark": public["player1Mark"],
        }
    }


def _hashed(field: str) -> Any:
    return assign(lambda c, e: {"public": {**c["public"], field: e["output"]}})


def _turn(mark: str, name: str | None = None, other: str | None = None) -> dict[str, Any]:
    """The states of one side's turn, named after ``name`` (the mark by default: the
    first version of this example called the o side ``y``; see examples/migrations)."""
    name = name or mark
    other = other or ("o" if mark == "x" else "x")
    return {
        f"Awaiting {name} move": {
            "on": {
                "move": {
                    "guard": "isLegalMove",
                    "target": f"Process {name} move",
                    "actions": _mark(mark),
                }
            }
        },
        f"Process {name} move": {
            "always": [
                {"guard": "isGameOver", "target": "#game.Game over"},
                {"target": f"Awaiting {other} move"},
            ]
        },
    }


machine = setup(
    actors={"hashId": hash_id},
    guards={
        "isNewPlayer": lambda c, e: e.get("playerId") not in (None, "", c["player1Id"]),
        "isLegalMove": _is_legal,
        "isGameOver": lambda c, e: get_result(c["public"]["board"]) is not None,
    },
).create_machine(
    {
        "id": "game",
        "initial": "Set player 1 ID",
        "context": lambda input: {
            "player1Id": "",
            "player2Id": "",
            "public": {
                "winners": [],
                "board": [["", "", ""] for _ in range(3)],
                "player1Mark": "x",
                "player2Mark": "o",
                "hashedPlayer1Id": "",
                "hashedPlayer2Id": "",
            },
        },
        "states": {
            "Set player 1 ID": {
                "invoke": {
                    "src": "hashId",
                    "input": lambda c, e: c["player1Id"],
                    "onDone": {
                        "target": "Awaiting player 2",
                        "actions": _hashed("hashedPlayer1Id"),
                    },
                }
            },
            "Awaiting player 2": {
                "on": {
                    "join": {
                        "guard": "isNewPlayer",
                        "target": "Set player 2 ID",
                        "actions": assign({"player2Id": lambda c, e: e["playerId"]}),
                    }
                }
            },
            "Set player 2 ID": {
                "invoke": {
                    "src": "hashId",
                    "input": lambda c, e: c["player2Id"],
                    "onDone": {"target": "Playing", "actions": _hashed("hashedPlayer2Id")},
                }
            },
            "Playing": {"initial": "Awaiting x move", "states": {**_turn("x"), **_turn("o")}},
            "Game over": {
                "entry": assign(_record_winner),
                "on": {"Play again": {"target": "Playing", "actions": assign(_new_round)}},
            },
        },
    }
)


def allow_read(*, auth_context: dict[str, Any], context: Any, **_: Any) -> bool:
    sid = auth_context.get("sid")
    return bool(sid) and (
        sid in (context["player1Id"], context["player2Id"]) or not context["player2Id"]
    )


def allow_write(
    *, auth_context: dict[str, Any], context: Any, state: Any, event: Any, write_type: str, **_: Any
) -> bool:
    sid = auth_context.get("sid")
    if not sid:
        return False
    if write_type == "initialization":
        return bool(context) and sid == context.get("player1Id")
    if isinstance(event, dict) and event.get("type") == "join":
        return sid == event.get("playerId")
    players = {context["player1Id"]: "player1Mark", context["player2Id"]: "player2Mark"}
    if sid not in players:
        return False
    if isinstance(state, dict) and isinstance(state.get("Playing"), str):
        whose_turn = state["Playing"].removeprefix("Awaiting ").removesuffix(" move")
        return bool(context["public"][players[sid]] == whose_turn)
    return True
