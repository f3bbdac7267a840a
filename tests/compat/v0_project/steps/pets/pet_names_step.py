# A Motia 0.x event step with a blocking (`def`) handler: `context.state.get_group` in a worker thread.
config = {
    "type": "event",
    "name": "CountPets",
    "subscribes": ["pet.adopted"],
    "emits": [],
    "flows": ["shelter"],
}


def handler(input, context):
    names = sorted(pet["name"] for pet in context.state.get_group("pets"))
    context.state.set("census", f"names-after-{input['id']}", names)
