// Placeholder until the example app lands.
console.log('example pending')
