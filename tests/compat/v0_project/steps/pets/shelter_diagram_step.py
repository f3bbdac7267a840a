# A Motia 0.x noop step: a node of the flow diagram, with no trigger.
config = {
    "type": "noop",
    "name": "ShelterVolunteers",
    "description": "Volunteers greet each new pet",
    "virtualEmits": ["shelter.notified"],
    "virtualSubscribes": ["pet.adopted"],
    "flows": ["shelter"],
}


async def handler(_, context):
    pass
