using System.Collections.Concurrent;
using System.Reflection;
using Xunit.Sdk;
using Xunit.v3;

[assembly: TestFramework(typeof(Higher.Tests.Shared.GroupSkippingFramework))]

namespace Higher.Tests.Shared;

/// <summary>
/// Marks a test class whose every case needs something this machine may lack (a GPU): when
/// <c>reasonType.reasonProperty</c> (a static string property) is non-null at discovery, the class's
/// cases are not run and the class reports once, through its <see cref="SkippedGroups.MethodName"/>
/// test, skipped with that reason and the number of cases left out. When it is null every case runs.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class SkipGroupWhenAttribute(Type reasonType, string reasonProperty) : Attribute
{
    /// <summary>Why the group cannot run here, or null.</summary>
    public string? Reason() =>
        (string?)(reasonType.GetProperty(reasonProperty, BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic)
            ?? throw new InvalidOperationException($"{reasonType.Name} has no static property {reasonProperty}.")).GetValue(null);
}

/// <summary>The one report of a skipped group, and the count of its cases that discovery left out.</summary>
public static class SkippedGroups
{
    /// <summary>The name of the test method through which a group reports.</summary>
    public const string MethodName = "WholeGroup_RunsOnlyWhereItsDeviceExists";

    private static readonly ConcurrentDictionary<Type, int> Dropped = new();

    internal static void CountDropped(Type group) => Dropped.AddOrUpdate(group, 1, (_, n) => n + 1);

    /// <summary>
    /// Skips with <paramref name="reason"/> and the number of cases not run when the group cannot
    /// run here; otherwise checks that discovery left none of the group's cases out.
    /// </summary>
    public static void Report(Type group, string? reason)
    {
        ArgumentNullException.ThrowIfNull(group);
        int dropped = Dropped.GetValueOrDefault(group);
        if (reason is not null)
        {
            Assert.Skip($"{group.Name}: all {dropped} other cases not run. {reason}");
        }
        Assert.Equal(0, dropped);
    }
}

/// <summary>xunit's framework, with <see cref="SkipGroupWhenAttribute"/> groups collapsed at discovery.</summary>
public sealed class GroupSkippingFramework : XunitTestFramework
{
    private readonly string? _configFileName;

    /// <summary>The framework without a configuration file.</summary>
    public GroupSkippingFramework()
    {
    }

    /// <summary>The framework with xunit's configuration file.</summary>
    public GroupSkippingFramework(string? configFileName) : base(configFileName) => _configFileName = configFileName;

    /// <inheritdoc/>
    protected override ITestFrameworkDiscoverer CreateDiscoverer(Assembly assembly)
    {
        ArgumentNullException.ThrowIfNull(assembly);
        return new Discoverer(new XunitTestAssembly(assembly, _configFileName, null, null, null, null, assembly.GetName().Version));
    }

    private sealed class Discoverer(IXunitTestAssembly testAssembly) : XunitTestFrameworkDiscoverer(testAssembly)
    {
        protected override ValueTask<bool> FindTestsForType(IXunitTestClass testClass, ITestFrameworkDiscoveryOptions discoveryOptions, Func<ITestCase, ValueTask<bool>> discoveryCallback)
        {
            var group = testClass.Class;
            if (group.GetCustomAttribute<SkipGroupWhenAttribute>()?.Reason() is null)
            {
                return base.FindTestsForType(testClass, discoveryOptions, discoveryCallback);
            }
            return base.FindTestsForType(testClass, discoveryOptions, testCase =>
            {
                if (testCase.TestMethodName == SkippedGroups.MethodName)
                {
                    return discoveryCallback(testCase);
                }
                SkippedGroups.CountDropped(group);
                return new ValueTask<bool>(true);
            });
        }
    }
}
