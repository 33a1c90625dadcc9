from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_auto_20261129_1143')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ModelUsage',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='model_usage', on_delete=OnDelete.CASCADE)),
                ('day', fields.DateField()),
                ('model', fields.CharField(max_length=100)),
                ('calls', fields.BigIntField(default=0)),
                ('tokens_in', fields.BigIntField(default=0)),
                ('tokens_out', fields.BigIntField(default=0)),
                ('cost_micros', fields.BigIntField(default=0)),
            ],
            options={'table': 'model_usage', 'app': 'models', 'unique_together': (('user', 'day', 'model'),), 'indexes': [Index(fields=['day'], name='ix_model_usage_day')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
