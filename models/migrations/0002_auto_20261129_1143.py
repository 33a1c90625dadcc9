from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SyncClientGroup',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='sync_client_groups', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'sync_client_groups', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One local database on one device, bound to its user on first use.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SyncClient',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('group', fields.ForeignKeyField('models.SyncClientGroup', source_field='group_id', db_constraint=True, to_field='id', related_name='clients', on_delete=OnDelete.CASCADE)),
                ('client_id', fields.CharField(max_length=64)),
                ('last_mutation_id', fields.BigIntField(default=0)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'sync_clients', 'app': 'models', 'unique_together': (('group', 'client_id'),), 'pk_attr': 'id', 'table_description': 'One writer of a group, with the id of its last processed mutation.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SyncEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('scope', fields.CharField(max_length=64)),
                ('type', fields.CharField(max_length=16)),
                ('entity_id', fields.CharField(max_length=36)),
                ('version', fields.BigIntField()),
                ('op', fields.CharField(max_length=3)),
                ('data', fields.TextField(null=True, unique=False)),
                ('clocks', fields.TextField(default='{}', unique=False)),
                ('changed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'sync_entries', 'app': 'models', 'unique_together': (('scope', 'type', 'entity_id'),), 'indexes': [Index(fields=['scope', 'version', 'type', 'entity_id'], name='ix_sync_entries_order'), Index(fields=['op', 'changed_at'], name='ix_sync_entries_tombstones')], 'pk_attr': 'id', 'table_description': 'The latest state of one row of a scope, as sync sends it: PUT (data) or DEL (tombstone).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SyncMutationResult',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('client', fields.ForeignKeyField('models.SyncClient', source_field='client_id', db_constraint=True, to_field='id', related_name='results', on_delete=OnDelete.CASCADE)),
                ('mutation_id', fields.BigIntField()),
                ('result', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'sync_mutation_results', 'app': 'models', 'unique_together': (('client', 'mutation_id'),), 'pk_attr': 'id', 'table_description': 'The result of a processed mutation, returned again (DUPLICATE) when it is retried.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SyncRejection',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user_id', fields.UUIDField()),
                ('group_id', fields.CharField(max_length=64)),
                ('client_id', fields.CharField(max_length=64)),
                ('mutation_id', fields.BigIntField()),
                ('name', fields.CharField(max_length=64)),
                ('args', fields.TextField(unique=False)),
                ('kind', fields.CharField(max_length=16)),
                ('code', fields.CharField(max_length=64)),
                ('message', fields.TextField(default='', unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'sync_rejections', 'app': 'models', 'indexes': [Index(fields=['user_id', 'created_at'], name='ix_sync_rejections_user')], 'pk_attr': 'id', 'table_description': 'A rejected intent or a conflict (kept, never silently dropped).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SyncScope',
            fields=[
                ('key', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('version', fields.BigIntField(default=0)),
                ('gc_version', fields.BigIntField(default=0)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'sync_scopes', 'app': 'models', 'pk_attr': 'key', 'table_description': 'A unit of sync (`user:<id>` or `course:<id>`) with its version counter.'},
            bases=['Model'],
        ),
    ]
