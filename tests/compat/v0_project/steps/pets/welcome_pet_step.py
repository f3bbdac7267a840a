# A Motia 0.x event step: `subscribes`, `input`, `infrastructure`, `(input, context)`.
config = {
    "type": "event",
    "name": "WelcomePet",
    "subscribes": ["pet.adopted"],
    "emits": [],
    "input": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
        "required": ["id", "name"],
    },
    "infrastructure": {"handler": {"timeout": 10}, "queue": {"maxRetries": 2}},
    "flows": ["shelter"],
}


async def handler(input, context):
    await context.state.set("welcomed", input["id"], {"message": f"Welcome, {input['name']}!"})
